package proxy_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/cmd/herd/internal/proxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echo starts a line echo server on loopback and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// ask sends a line on c and returns the answer, or the error of a read
// that got none within wait.
func ask(c net.Conn, r *bufio.Reader, wait time.Duration) (string, error) {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// connected starts a proxy to an echo server, which the test closes at its
// end, and returns it with a connection through it that had an answer.
func connected(t *testing.T) (*proxy.Proxy, net.Conn, *bufio.Reader) {
	t.Helper()
	p, err := proxy.Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := bufio.NewReader(c)
	if got, err := ask(c, r, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	return p, c, r
}

// A hang holds what both sides send, on open connections, and Restore
// delivers it; a connection made during the hang is taken and held too.
func TestHangHoldsThenDelivers(t *testing.T) {
	p, c, r := connected(t)
	p.Cut(proxy.Hang)
	if got, err := ask(c, r, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("while hung: %q, %v; want a read that times out", got, err)
	}
	late, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("a connection during the hang is taken, as a stopped server's kernel does: %v", err)
	}
	defer late.Close()
	lr := bufio.NewReader(late)
	if got, err := ask(late, lr, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection while hung: %q, %v; want a read that times out", got, err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	// The line sent during the hang arrives now, then the new one's answer.
	for _, conn := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c, r}, {late, lr}} {
		if err := conn.c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if got, err := conn.r.ReadString('\n'); err != nil || got != "ping\n" {
			t.Fatalf("held line after Restore: %q, %v", got, err)
		}
		if got, err := ask(conn.c, conn.r, 5*time.Second); err != nil || got != "ping\n" {
			t.Fatalf("after Restore: %q, %v", got, err)
		}
	}
}

// Refuse closes the open connections and refuses new ones; Restore listens
// on the same port again.
func TestRefuseClosesThenListensAgain(t *testing.T) {
	p, c, r := connected(t)
	p.Cut(proxy.Refuse)
	if got, err := ask(c, r, 5*time.Second); err == nil {
		t.Fatalf("an open connection answered %q after Refuse", got)
	}
	if d, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = d.Close()
		t.Fatal("a new connection was taken after Refuse")
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	d, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	defer d.Close()
	if got, err := ask(d, bufio.NewReader(d), 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("after Restore: %q, %v", got, err)
	}
}

// Close ends a hang too: the held connections close, and Restore after it
// is an error.
func TestCloseEndsAHang(t *testing.T) {
	p, err := proxy.Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Cut(proxy.Hang)
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got, err := ask(c, bufio.NewReader(c), 5*time.Second); err == nil {
		t.Fatalf("answer %q after Close", got)
	}
	if err := p.Restore(); !errors.Is(err, proxy.ErrClosed) {
		t.Fatalf("Restore after Close: %v", err)
	}
}

func TestParseFault(t *testing.T) {
	for s, want := range map[string]proxy.Fault{"hang": proxy.Hang, "refuse": proxy.Refuse} {
		if f, err := proxy.ParseFault(s); err != nil || f != want || f.String() != s {
			t.Errorf("ParseFault(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := proxy.ParseFault("kill"); err == nil {
		t.Error("ParseFault(kill): no error")
	}
}
