package jbrserver

import (
	"context"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Conflict keys order the application of committed entries: an entry
// waits only for earlier entries that share a key with it, so writes to
// different files apply in parallel while those to one file keep the
// log's order. An entry's keys are the object it changes, the
// directories whose entries it changes, and the new object it creates.
// Unlink, rmdir and rename also change the object a name held; the
// leader looks it up before proposing and records it in the entry
// (keysKey), so every replica orders alike. The lookup is best effort:
// an earlier entry still in flight may change what the name holds, and
// that entry shares the directory key anyway.

// conflictKeys returns f's keys, the first being its target, plus the
// extra keys recorded by the leader (concatenated GFIDs).
func conflictKeys(f *xl.Fop, extra []byte) []xl.GFID {
	keys := []xl.GFID{f.Target()}
	add := func(g xl.GFID) {
		if !g.IsZero() {
			for _, k := range keys {
				if k == g {
					return
				}
			}
			keys = append(keys, g)
		}
	}
	switch f.Op {
	case xl.OpMknod, xl.OpMkdir, xl.OpSymlink, xl.OpCreate, xl.OpLink, xl.OpRename:
		add(f.GFID2) // the new object, or the new parent
	}
	for ; len(extra) >= 16; extra = extra[16:] {
		add(xl.GFID(extra[:16]))
	}
	return keys
}

// namedObjects looks up, on the leader's store, the objects an unlink,
// rmdir or rename will detach from their names, as extra conflict keys.
func namedObjects(ctx context.Context, x xl.Xlator, f *xl.Fop) []byte {
	var out []byte
	look := func(parent xl.GFID, name string) {
		if a, e := x.Lookup(ctx, parent, name); e == 0 {
			out = append(out, a.GFID[:]...)
		}
	}
	switch f.Op {
	case xl.OpUnlink, xl.OpRmdir:
		look(f.GFID, f.Name)
	case xl.OpRename:
		look(f.GFID, f.Name)
		look(f.GFID2, f.Name2)
	}
	return out
}

// readKey is the object whose pending entries a read must see applied;
// zero for Statfs, which waits for every entry.
func readKey(f *xl.Fop) xl.GFID {
	if f.Op == xl.OpStatfs {
		return xl.GFID{}
	}
	return f.Target()
}
