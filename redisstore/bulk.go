package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// maxScriptKeys bounds the cache keys of one script call of a bulk step, so
// that one call holds the server only briefly: a batch of more keys of one
// hash slot (or shard, or server) makes several calls, in the same pipeline.
const maxScriptKeys = 256

// A scriptCall is one script call of a bulk step: the indexes, in the
// batch, of the cache keys it carries, and its Redis keys and arguments.
type scriptCall struct {
	idx  []int
	keys []string
	args []any
}

// A batch groups the script calls of one bulk step by where their keys are
// served: one call per hash slot on Cluster (a script's keys must share a
// slot), per shard on a Ring (which sends a command to the shard of its
// first key), and one for a single server, each of at most maxScriptKeys
// cache keys.
type batch struct {
	s     placer
	head  []any // the arguments every call starts with
	calls []*scriptCall
	open  map[any]*scriptCall // the call being filled, by place
}

// placer finds where a Redis key is served.
type placer interface {
	place(rkey string) (any, error)
}

func newBatch(s placer, head ...any) *batch {
	return &batch{s: s, head: head, open: make(map[any]*scriptCall)}
}

// add puts cache key i, with its Redis keys rkeys (the first decides where
// the call goes) and its arguments, in a call. It fails only when a Ring
// has no shard for the key.
func (b *batch) add(i int, rkeys []string, args ...any) error {
	where, err := b.s.place(rkeys[0])
	if err != nil {
		return err
	}
	c := b.open[where]
	if c == nil || len(c.idx) == maxScriptKeys {
		c = &scriptCall{args: append([]any(nil), b.head...)}
		b.calls = append(b.calls, c)
		b.open[where] = c
	}
	c.idx = append(c.idx, i)
	c.keys = append(c.keys, rkeys...)
	c.args = append(c.args, args...)
	return nil
}

// singleServer is the place of every key on a single server.
type singleServer struct{}

func (s *Store[T]) place(rkey string) (any, error) {
	switch {
	case s.cluster != nil:
		return keySlot(rkey), nil
	case s.ring != nil:
		return s.ring.GetShardClientForKey(rkey)
	}
	return singleServer{}, nil
}

// run sends the calls of a batch in one pipeline, each as EVALSHA of
// script: one round trip to each server the calls go to (go-redis sends a
// Cluster or Ring pipeline to each master or shard at once). The calls a
// server refuses because it does not know the script (after a restart, a
// failover or SCRIPT FLUSH) are sent again as EVAL, in a second pipeline,
// after which the server knows it. It returns each call's reply.
func (s *Store[T]) run(ctx context.Context, script *redis.Script, calls []*scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	pipe := s.client.Pipeline()
	for i, c := range calls {
		cmds[i] = script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read by the caller
	var again []int
	for i, cmd := range cmds {
		if noScript(cmd.Err()) {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return cmds
	}
	pipe = s.client.Pipeline()
	for _, i := range again {
		cmds[i] = script.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
	}
	_, _ = pipe.Exec(ctx)
	return cmds
}

func noScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// replies returns the array reply of cmd, which must hold per values for
// each of n keys, or the error of the call.
func replies(cmd *redis.Cmd, n, per int) ([]any, error) {
	res, err := cmd.Slice()
	if err == nil && len(res) != n*per {
		err = fmt.Errorf("unexpected reply of %d values for %d keys", len(res), n)
	}
	return res, err
}
