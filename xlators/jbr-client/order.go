package jbrclient

// The ordering rule (see the package doc) over one client's outstanding
// mutating requests. All of it runs with Client.mu held.

// ticket is one outstanding mutating request.
type ticket struct {
	g       *group
	client  [16]byte
	seq     uint64 // Call.Seq
	arrival uint64 // breaks ties, e.g. among requests without a Seq
	sent    bool   // in flight
	resend  bool   // failed once and was or will be sent again
	epoch   uint64 // the leader epoch it was last sent in
}

// before reports whether t precedes u in the client's order.
func (t *ticket) before(u *ticket) bool {
	if t.seq != u.seq {
		return t.seq < u.seq
	}
	return t.arrival < u.arrival
}

// group is one client's outstanding mutating requests.
type group struct {
	reqs map[*ticket]struct{}
	// wake is closed when a request is sent or completes; nil while
	// nobody waits, so the steady state allocates nothing.
	wake chan struct{}
}

func (g *group) waiter() <-chan struct{} {
	if g.wake == nil {
		g.wake = make(chan struct{})
	}
	return g.wake
}

func (g *group) signal() {
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
}

func (c *Client) register(t *ticket) {
	g := c.groups[t.client]
	if g == nil {
		g = &group{reqs: make(map[*ticket]struct{})}
		c.groups[t.client] = g
	}
	c.arrival++
	t.g, t.arrival = g, c.arrival
	g.reqs[t] = struct{}{}
}

// blocked reports whether an earlier request of t's client holds t back:
// it is not sent yet, was sent to an earlier epoch's leader, or is a
// resend, which must be answered before later requests go.
func (c *Client) blocked(t *ticket) bool {
	for u := range t.g.reqs {
		if u != t && u.before(t) && (!u.sent || u.resend || u.epoch != c.epoch) {
			return true
		}
	}
	return false
}

// send marks t in flight to the current epoch's leader.
func (c *Client) send(t *ticket) {
	t.sent, t.epoch = true, c.epoch
	if !t.resend {
		t.g.signal() // later requests may follow it out
	}
}

// finish forgets a completed request.
func (c *Client) finish(t *ticket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := t.g
	if g == nil {
		return
	}
	delete(g.reqs, t)
	g.signal()
	if len(g.reqs) == 0 {
		delete(c.groups, t.client)
	}
}
