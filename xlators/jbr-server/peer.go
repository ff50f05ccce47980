package jbrserver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

const (
	// maxBatchBytes bounds one IpcStep call, well inside the protocol's
	// default frame limit.
	maxBatchBytes = 8 << 20
	// maxQueueBytes bounds what waits for a slow or absent peer; beyond
	// it the queue is dropped. The core treats that as lost messages:
	// heartbeats and resends catch the peer up.
	maxQueueBytes = 64 << 20
	backoffMin    = 50 * time.Millisecond
	backoffMax    = time.Second
)

// connector is implemented by peers that know whether they are connected
// (the protocol client).
type connector interface{ Connected() bool }

// peer sends messages to one other replica of the set, in order: one
// IpcStep call at a time, each carrying everything queued meanwhile. The
// calls want no reply (protocol/client.NoReply): answers travel as
// messages of their own, so over the protocol a call returns once it is
// written, and the peer's server sends nothing back.
type peer struct {
	id   core.ID
	x    xl.Xlator
	s    *Server
	mu   sync.Mutex
	q    []core.Message
	n    int // bytes queued
	wake chan struct{}
}

func newPeer(s *Server, id core.ID, x xl.Xlator) *peer {
	return &peer{id: id, x: x, s: s, wake: make(chan struct{}, 1)}
}

// connected reports whether the peer looks reachable.
func (p *peer) connected() bool {
	if c, ok := p.x.(connector); ok {
		return c.Connected()
	}
	return true
}

func (p *peer) send(m core.Message) {
	size := msgSize(&m)
	p.mu.Lock()
	if p.n+size > maxQueueBytes {
		p.s.log.Warn("jbr: dropping messages queued for a slow peer", "peer", p.id, "messages", len(p.q), "bytes", p.n)
		clear(p.q)
		p.q, p.n = p.q[:0], 0
	}
	p.q = append(p.q, m)
	p.n += size
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take removes a batch of at most maxBatchBytes (at least one message).
func (p *peer) take() []core.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, size := 0, 0
	for k < len(p.q) && (k == 0 || size+msgSize(&p.q[k]) <= maxBatchBytes) {
		size += msgSize(&p.q[k])
		k++
	}
	batch := make([]core.Message, k)
	copy(batch, p.q)
	clear(p.q[:k])
	p.q = p.q[k:]
	p.n -= size
	return batch
}

func (p *peer) run(ctx context.Context) {
	backoff := backoffMin
	failing := false
	sendCtx := client.NoReply(ctx) // every batch's: marked once
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		for {
			batch := p.take()
			if len(batch) == 0 {
				break
			}
			cctx, cancel := context.WithTimeout(sendCtx, p.s.opts.RequestTimeout)
			_, e := p.x.Ipc(cctx, IpcStep, encodeMessages(p.s.setID(), batch))
			cancel()
			if ctx.Err() != nil {
				return
			}
			if e == 0 {
				if failing {
					p.s.log.Info("jbr: peer reachable again", "peer", p.id)
				}
				failing, backoff = false, backoffMin
				continue
			}
			// The batch is lost; the core recovers from that. Back off so
			// that a dead peer costs little.
			if !failing {
				p.s.log.Warn("jbr: cannot reach peer", "peer", p.id, "errno", e)
			}
			failing = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, backoffMax)
		}
	}
}

// fetch is a request to read entries from the journal and send them: a
// FetchResp to a recovering leader, or an Append to a lagging follower.
type fetch struct {
	msg   core.Message // everything but Entries
	spans []span
}

var errFetchFull = errors.New("fetch batch full")

// fetcher answers fetches, one at a time, off the loop.
func (s *Server) fetcher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.fetches:
			m := f.msg
			m.Entries = s.readEntries(f.spans)
			if p := s.peers[m.To]; p != nil {
				p.send(m)
			}
		}
	}
}

// readEntries reads the entries the spans locate, in order, up to
// maxBatchBytes and only as far as the journal holds them durably and
// contiguously.
func (s *Server) readEntries(spans []span) []core.Entry {
	if len(spans) == 0 {
		return nil
	}
	var out []core.Entry
	size, k := 0, 0
	next := spans[0].first
	err := s.j.Iterate(0, spans[0].jfirst, func(rec *journal.Record) error {
		for k < len(spans) && rec.Index > spans[k].jlast {
			k++
		}
		if k == len(spans) {
			return errFetchFull
		}
		sp := spans[k]
		if rec.Index < sp.jfirst {
			return nil // replaced
		}
		e, _, err := entryOf(rec)
		if err != nil {
			return err
		}
		if e.Index != next || e.Index != sp.first+(rec.Index-sp.jfirst) {
			return errFetchFull // the log moved on since the fetch was asked for
		}
		ce := core.Entry{Term: e.Term, Index: e.Index}
		if !e.noop {
			ce.Req, ce.Key = e.Req, e.keys[0]
			ce.Data, _ = encodeRequest(&e.call, &e.fop)
		}
		if size += entryFixed + len(ce.Data); size > maxBatchBytes && len(out) > 0 {
			return errFetchFull
		}
		out = append(out, ce)
		next++
		return nil
	})
	if err != nil && !errors.Is(err, errFetchFull) {
		s.log.Warn("jbr: reading the journal for a peer", "err", err)
	}
	return out
}
