package catch_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/herdcache/herd/internal/catch"
)

func TestCallReturns(t *testing.T) {
	ran := false
	if p := catch.Call(func() { ran = true }, func() { t.Error("onGoexit ran for a function that returned") }); p != nil || !ran {
		t.Fatalf("Call = %v, ran %v; want nil, true", p, ran)
	}
}

func boom() { panic(errors.New("boom")) }

func TestCallRecoversAPanicWithItsStack(t *testing.T) {
	p := catch.Call(boom, nil)
	if p == nil {
		t.Fatal("Call returned nil for a panicking function")
	}
	if err, ok := p.Value.(error); !ok || err.Error() != "boom" {
		t.Errorf("Value = %v, want the error boom", p.Value)
	}
	if strings.HasPrefix(string(p.Stack), "goroutine ") {
		t.Errorf("Stack keeps the goroutine line:\n%s", p.Stack)
	}
	if !strings.Contains(string(p.Stack), "catch_test.boom") {
		t.Errorf("Stack does not show where the panic happened:\n%s", p.Stack)
	}
}

func TestCallTellsAPanicOfNilFromGoexit(t *testing.T) {
	p := catch.Call(func() { panic(nil) }, func() { t.Error("onGoexit ran for panic(nil)") })
	var pn *runtime.PanicNilError
	if p == nil || !errors.As(p.Value.(error), &pn) {
		t.Fatalf("Call = %+v, want a *runtime.PanicNilError", p)
	}
}

func TestCallLetsGoexitGoOn(t *testing.T) {
	var (
		wg             sync.WaitGroup
		sawGoexit      bool
		returnedToCall bool
	)
	wg.Go(func() {
		catch.Call(runtime.Goexit, func() { sawGoexit = true })
		returnedToCall = true
	})
	wg.Wait()
	if !sawGoexit || returnedToCall {
		t.Fatalf("onGoexit ran %v, Call returned %v; want true, false", sawGoexit, returnedToCall)
	}
}

func TestCallAllocatesNothingWhenFnReturns(t *testing.T) {
	n := 0
	if allocs := testing.AllocsPerRun(100, func() {
		catch.Call(func() { n++ }, nil)
	}); allocs != 0 {
		t.Fatalf("Call allocated %v times, want 0", allocs)
	}
}

func TestUnwoundLetsThePanicGoOn(t *testing.T) {
	var unwound bool
	defer func() {
		r := recover()
		if r != "boom" || !unwound {
			t.Fatalf("recovered %v, unwound %v; want the panic to go on after unwound ran", r, unwound)
		}
	}()
	catch.Unwound(func() { panic("boom") }, func() { unwound = true })
}

func TestUnwoundOnReturn(t *testing.T) {
	ran := false
	catch.Unwound(func() { ran = true }, func() { t.Error("unwound ran for a function that returned") })
	if !ran {
		t.Fatal("fn did not run")
	}
}
