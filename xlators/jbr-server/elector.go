package jbrserver

import "github.com/gluon-fs/gluon/xlators/jbr-server/election"

var (
	_ Elector = (*election.Campaign)(nil)
	_ Elector = (*FakeElector)(nil)
)

// FakeElector is an Elector driven by hand, for tests and for bricks run
// without etcd (a single-brick set elects itself).
type FakeElector struct {
	ch chan election.Event
}

// NewFakeElector returns an elector with nothing to report yet.
func NewFakeElector() *FakeElector {
	return &FakeElector{ch: make(chan election.Event, 64)}
}

// Events implements Elector.
func (f *FakeElector) Events() <-chan election.Event { return f.ch }

// Elect reports that this brick, self, won term.
func (f *FakeElector) Elect(self int, term uint64) {
	f.ch <- election.Event{Kind: election.Elected, Leader: self, Term: term}
}

// Observe reports that leader holds term.
func (f *FakeElector) Observe(leader int, term uint64) {
	f.ch <- election.Event{Kind: election.Observed, Leader: leader, Term: term}
}

// Lose reports that this brick's session ended.
func (f *FakeElector) Lose() {
	f.ch <- election.Event{Kind: election.Lost}
}
