package herdtest_test

import (
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/herdcache/herd/internal/herdtest"
)

// Bug: a connection that the proxy accepted while Cut ran (after Cut had
// closed the connections it knew, before the accept loop recorded the new
// one) was forwarded on, and Cut waited for ever for its forwarding to end.
// Clients that reconnect at once, as a NATS client does, hit it. Here
// clients dial the proxy without pause, each holding its connection until
// the proxy closes it, while it is cut and restored: every Cut returns.
func TestRegressionCutRacesAnAccept(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	served.Go(func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			served.Go(func() {
				buf := make([]byte, 1)
				_, _ = c.Read(buf) // until the proxy closes its side
				_ = c.Close()
			})
		}
	})
	p := herdtest.NewProxy(t, target.Addr().String())
	stop := make(chan struct{})
	var dialers sync.WaitGroup
	for range 8 {
		dialers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", p.Addr())
				if err != nil {
					continue
				}
				buf := make([]byte, 1)
				_, _ = c.Read(buf) // held open until the proxy closes it
				_ = c.Close()
			}
		})
	}
	for range 300 {
		herdtest.Returns(t, "Cut", func() error { p.Cut(); return nil })
		p.Restore()
	}
	close(stop)
	p.Cut() // the dialers' connections end
	dialers.Wait()
	if err := target.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	served.Wait()
}
