// Package systest proves JBR replication under failures, end to end. Its
// tests run the real parts: an embedded etcd, three `gluon brick`
// processes (the real binary, built once, so a test can SIGKILL and
// SIGSTOP them) and the client graph in the test process (client.Open),
// and they check what a user depends on: no acknowledged write is lost or
// duplicated, a deposed leader acknowledges nothing, reads and writes are
// linearizable (checked with porcupine), a volume without quorum fails
// cleanly and resumes, and every replica converges once its brick is
// back.
//
// The package holds tests only:
//
//	go test -race ./systest
package systest
