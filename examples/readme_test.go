package examples

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Go blocks of the repository's READMEs compile, so that a renamed
// function, a changed signature or a dropped option breaks the build, not
// a newcomer's first try.
//
// Every block fenced with ```go is checked, in one of two ways:
//
//   - A program: a block whose code begins with a package clause is a
//     file of its own, built as it stands.
//   - A fragment: a block preceded by the line <!-- fragment --> (the last
//     non-blank line before the fence; markdown renders nothing for it) is
//     a list of statements. It is built as the body of a function returning
//     error, beside a prelude that declares the names the READMEs' fragments
//     take for granted (ctx, User, loadUser, client, ...: see [prelude]),
//     with the imports of the packages it names (see [importPaths]), and
//     with its top-level variables marked used. So a fragment is
//     type-checked as a program is: a renamed function, a wrong number of
//     results or an option that no longer exists fails it.
//
// Any other ```go block fails the test: no block goes unchecked. Every
// block becomes a package of one scratch module, in a workspace that uses
// the modules of this one, and a single go build compiles them all; a
// //line directive makes each error point at the README's own line.
//
// Two canary blocks, a fragment and a program that call APIs that do not
// exist, are built with them: the test fails unless the build reports
// both, so the check cannot pass by checking nothing.
func TestREADMEBlocksCompile(t *testing.T) {
	var blocks []block
	for _, f := range []struct{ path, shown string }{
		{"../README.md", "README.md"},
		{"README.md", "examples/README.md"},
	} {
		src, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := extractBlocks(f.shown, src)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, bs...)
	}
	if n := countFrom(blocks, "README.md"); n < 10 {
		t.Fatalf("found %d Go blocks in README.md; the check looks for ```go fences", n)
	}
	canaries, err := extractBlocks(canaryFile, []byte(canary))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := writeScratchModule(dir, append(blocks, canaries...)); err != nil {
		t.Fatal(err)
	}
	out, buildErr := goBuild(t, dir)
	if buildErr == nil {
		t.Fatalf("the canary blocks built without an error: the check checks nothing\n%s", out)
	}
	var problems []string
	reported := map[int]bool{} // canary blocks with an error, by line
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "# ") {
			continue // the package whose errors follow
		}
		if m := errorLine.FindStringSubmatch(l); m != nil && m[1] == canaryFile {
			for _, b := range canaries {
				if n, _ := strconv.Atoi(m[2]); b.contains(n) {
					reported[b.line] = true
				}
			}
			continue
		}
		problems = append(problems, l)
	}
	if len(problems) > 0 {
		t.Errorf("the README's Go blocks do not build:\n%s", strings.Join(problems, "\n"))
	}
	for _, b := range canaries {
		if !reported[b.line] {
			t.Errorf("the build did not report the broken canary block at %s:%d:\n%s", canaryFile, b.line, out)
		}
	}
	t.Logf("%d blocks of the READMEs checked (%d fragments)", len(blocks), countFragments(blocks))
}

// fragmentMarker, alone on the last non-blank line before a ```go fence,
// marks the block as a fragment.
const fragmentMarker = "<!-- fragment -->"

// errorLine is an error of the compiler: file:line[:col]: message.
var errorLine = regexp.MustCompile(`^(\S+\.md):(\d+)(?::\d+)?: `)

// canaryFile names the canary blocks in errors.
const canaryFile = "canary.md"

// canary holds two blocks that must not build: a fragment with an option
// that herd does not have, and a program that takes two results from
// redisstore.New, which returns one.
const canary = `A fragment:

<!-- fragment -->
` + "```go" + `
cache := herd.New(memory.New[User](), herd.TTLForever())
` + "```" + `

A program:

` + "```go" + `
package main

import "github.com/herdcache/herd/redisstore"

func main() {
	users, _ := redisstore.New[string](nil, redisstore.Prefix("users"))
	_ = users
}
` + "```" + `
`

// A block is one ```go block of a markdown file.
type block struct {
	file     string // the file, as errors name it
	line     int    // the line of the block's first line of code
	lines    int    // lines of code
	code     string
	fragment bool
}

// contains reports whether line of the file is a line of b's code.
func (b *block) contains(line int) bool { return line >= b.line && line < b.line+b.lines }

// extractBlocks returns the ```go blocks of the markdown src, named file
// in errors. A fence must start its line; a block that is neither a
// program nor marked as a fragment is an error.
func extractBlocks(file string, src []byte) ([]block, error) {
	lines := strings.Split(string(src), "\n")
	var blocks []block
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(strings.TrimSpace(l), "```go") {
			continue
		}
		if l != "```go" {
			return nil, fmt.Errorf("%s:%d: a Go block opens with a line that is exactly ```go, at the start of the line: %q", file, i+1, l)
		}
		b := block{file: file, line: i + 2}
		prev := i - 1
		for prev >= 0 && strings.TrimSpace(lines[prev]) == "" {
			prev--
		}
		b.fragment = prev >= 0 && strings.TrimSpace(lines[prev]) == fragmentMarker
		end := i + 1
		for end < len(lines) && lines[end] != "```" {
			end++
		}
		if end == len(lines) {
			return nil, fmt.Errorf("%s:%d: the Go block is not closed by a line ```", file, i+1)
		}
		b.lines = end - (i + 1)
		b.code = strings.Join(lines[i+1:end], "\n")
		if !b.fragment && !isProgram(b.code) {
			return nil, fmt.Errorf("%s:%d: a Go block is either a program (it begins with a package clause) or a fragment (the line before its fence is %s)", file, i+1, fragmentMarker)
		}
		blocks = append(blocks, b)
		i = end
	}
	return blocks, nil
}

// isProgram reports whether code begins, after comments and blank lines,
// with a package clause.
func isProgram(code string) bool {
	for _, l := range strings.Split(code, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "//") {
			continue
		}
		return strings.HasPrefix(l, "package ")
	}
	return false
}

// writeScratchModule writes, in dir, a module with a package per block and
// a workspace that uses it and every module of this workspace.
func writeScratchModule(dir string, blocks []block) error {
	work, err := goOutput("", "env", "GOWORK")
	if err != nil {
		return err
	}
	work = strings.TrimSpace(work)
	if work == "" || work == "off" {
		return fmt.Errorf("the README check builds in the repository's workspace, and go env GOWORK is %q", work)
	}
	workSrc, err := os.ReadFile(work)
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(workSrc)
	if m == nil {
		return fmt.Errorf("%s has no go line", work)
	}
	goVersion := string(m[1])
	mods, err := goOutput("", "list", "-m", "-f", "{{.Dir}}")
	if err != nil {
		return err
	}
	var ws strings.Builder
	fmt.Fprintf(&ws, "go %s\n\nuse (\n\t.\n", goVersion)
	for _, d := range strings.Fields(mods) {
		fmt.Fprintf(&ws, "\t%q\n", d)
	}
	ws.WriteString(")\n")
	files := map[string]string{
		"go.work": ws.String(),
		"go.mod":  "module readmeblocks\n\ngo " + goVersion + "\n",
	}
	if sum, err := os.ReadFile(filepath.Join(filepath.Dir(work), "go.work.sum")); err == nil {
		files["go.work.sum"] = string(sum)
	}
	for i, b := range blocks {
		pkg := fmt.Sprintf("b%02d", i)
		if !b.fragment {
			files[pkg+"/main.go"] = fmt.Sprintf("//line %s:%d:1\n%s\n", b.file, b.line, b.code)
			continue
		}
		src, err := wrapFragment(pkg, &b)
		if err != nil {
			return err
		}
		files[pkg+"/fragment.go"] = src
		files[pkg+"/prelude.go"] = "package " + pkg + "\n" + prelude
	}
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// wrapFragment returns the file of package pkg that holds fragment b: its
// statements as the body of a function, with the imports of the packages
// it names.
func wrapFragment(pkg string, b *block) (string, error) {
	body := fmt.Sprintf("func fragment() error {\n//line %s:%d:1\n%s\n}\n", b.file, b.line, b.code)
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", "package "+pkg+"\n"+body, 0)
	if err != nil {
		return "", fmt.Errorf("a fragment is a list of statements: %w", err)
	}
	fn := f.Decls[0].(*ast.FuncDecl)
	declared := map[string]bool{}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		for _, id := range declaredBy(n) {
			declared[id.Name] = true
		}
		return true
	})
	preludeNames, err := topLevelNames(prelude)
	if err != nil {
		return "", err
	}
	var imports []string
	var failure error
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || declared[x.Name] || preludeNames[x.Name] {
			return true
		}
		path, ok := importPaths[x.Name]
		if !ok && failure == nil {
			// The position follows the //line directive: the README's.
			failure = fmt.Errorf("%s: the fragment names %s, which is neither a package the check knows (importPaths) nor declared by the fragment or the prelude",
				fset.Position(x.Pos()), x.Name)
		}
		if ok && !slices.Contains(imports, path) {
			imports = append(imports, path)
		}
		return true
	})
	if failure != nil {
		return "", failure
	}
	// The fragment's own variables count as used: a README shows a call's
	// results without always using them.
	var used []string
	for _, st := range fn.Body.List {
		for _, id := range declaredBy(st) {
			if id.Name != "_" && !slices.Contains(used, id.Name) {
				used = append(used, id.Name)
			}
		}
	}
	var src strings.Builder
	fmt.Fprintf(&src, "package %s\n\nimport (\n", pkg)
	slices.Sort(imports)
	for _, p := range imports {
		fmt.Fprintf(&src, "\t%q\n", p)
	}
	fmt.Fprintf(&src, ")\n\nfunc fragment() error {\n//line %s:%d:1\n%s\n//line %s-wrapper:1:1\n", b.file, b.line, b.code, b.file)
	for _, name := range used {
		fmt.Fprintf(&src, "\t_ = %s\n", name)
	}
	src.WriteString("\treturn nil\n}\n")
	return src.String(), nil
}

// declaredBy returns the names that node n declares: the variables of a
// := or a var, the names of a type or a function, parameters and results.
func declaredBy(n ast.Node) []*ast.Ident {
	var ids []*ast.Ident
	switch n := n.(type) {
	case *ast.AssignStmt:
		if n.Tok == token.DEFINE {
			for _, e := range n.Lhs {
				if id, ok := e.(*ast.Ident); ok {
					ids = append(ids, id)
				}
			}
		}
	case *ast.RangeStmt:
		if n.Tok == token.DEFINE {
			for _, e := range []ast.Expr{n.Key, n.Value} {
				if id, ok := e.(*ast.Ident); ok {
					ids = append(ids, id)
				}
			}
		}
	case *ast.DeclStmt:
		if g, ok := n.Decl.(*ast.GenDecl); ok {
			for _, s := range g.Specs {
				switch s := s.(type) {
				case *ast.ValueSpec:
					ids = append(ids, s.Names...)
				case *ast.TypeSpec:
					ids = append(ids, s.Name)
				}
			}
		}
	case *ast.Field:
		ids = append(ids, n.Names...)
	}
	return ids
}

// topLevelNames returns the names that the declarations of src, a file
// without its package clause, declare.
func topLevelNames(src string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "prelude.go", "package p\n"+src, 0)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names[d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.ValueSpec:
					for _, id := range s.Names {
						names[id.Name] = true
					}
				case *ast.TypeSpec:
					names[s.Name.Name] = true
				}
			}
		}
	}
	return names, nil
}

// importPaths are the packages a fragment may name, by the name it uses.
var importPaths = map[string]string{
	"context":     "context",
	"errors":      "errors",
	"fmt":         "fmt",
	"http":        "net/http",
	"log":         "log",
	"slog":        "log/slog",
	"time":        "time",
	"herd":        "github.com/herdcache/herd",
	"autorefresh": "github.com/herdcache/herd/autorefresh",
	"flight":      "github.com/herdcache/herd/flight",
	"reqcache":    "github.com/herdcache/herd/reqcache",
	"slot":        "github.com/herdcache/herd/slot",
	"store":       "github.com/herdcache/herd/store",
	"memory":      "github.com/herdcache/herd/store/memory",
	"tiered":      "github.com/herdcache/herd/store/tiered",
	"herdotel":    "github.com/herdcache/herd/herdotel",
	"herdprom":    "github.com/herdcache/herd/herdprom",
	"natsstore":   "github.com/herdcache/herd/natsstore",
	"redisstore":  "github.com/herdcache/herd/redisstore",
	"jetstream":   "github.com/nats-io/nats.go/jetstream",
	"nats":        "github.com/nats-io/nats.go",
	"prometheus":  "github.com/prometheus/client_golang/prometheus",
	"promhttp":    "github.com/prometheus/client_golang/prometheus/promhttp",
	"redis":       "github.com/redis/go-redis/v9",
}

// prelude declares what the READMEs' fragments take for granted: a
// context, a User type and its loaders, a Redis client, and the other
// names they use without declaring them. It is compiled, never run.
const prelude = `
import (
	"context"
	"net/http"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/store"
)

type User struct{ ID, Name string }

type Config struct{ Version int }

type Job struct {
	State string
	Done  bool
}

var (
	ctx     = context.Background()
	id      = "42"
	ids     = []string{"1", "2", "3"}
	client  *redis.Client
	cache   *herd.Cache[User]
	users   *herd.Cache[User]
	st      store.Store[User]
	handler http.Handler
	mp      metric.MeterProvider
	tp      trace.TracerProvider

	db            userDB
	configService configSource
)

func loadUser(ctx context.Context, key string) (User, error) { return User{ID: key}, nil }

func syncJobs(ctx context.Context, batch []autorefresh.Item[string, Job]) ([]autorefresh.Result[string, Job], error) {
	return nil, nil
}

type userDB struct{}

func (userDB) LoadUser(ctx context.Context, id string) (User, error) { return User{ID: id}, nil }

func (userDB) LoadUsers(ctx context.Context, ids []string) (map[string]User, error) { return nil, nil }

type configSource struct{}

func (configSource) Load(ctx context.Context) (Config, error) { return Config{}, nil }
`

// goBuild builds every package of the module in dir and returns what go
// build printed and its error. Under -race, the build is too, so that it
// finds in the build cache the packages that the other modules' tests
// built.
func goBuild(t *testing.T, dir string) (string, error) {
	t.Helper()
	args := []string{"build"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./...")
	cmd := exec.Command(goCommand(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(dir, "go.work"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// goOutput runs the go command in dir ("" for the test's) and returns its
// standard output.
func goOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command(goCommand(), args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// goCommand is the go command that runs the test.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

func countFrom(blocks []block, file string) int {
	n := 0
	for _, b := range blocks {
		if b.file == file {
			n++
		}
	}
	return n
}

func countFragments(blocks []block) int {
	n := 0
	for _, b := range blocks {
		if b.fragment {
			n++
		}
	}
	return n
}
