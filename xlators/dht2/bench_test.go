package dht2

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// BenchmarkSmallFile measures what the package documentation argues:
// creating, writing (4 KiB), closing and stating a small file with its
// data colocated (DHT2 as built), against the least that separating data
// would cost on the same stores: the name and attributes on the
// directory's home, the data inode on another set (created and written
// there), and a stat that merges both sets' attributes.
func BenchmarkSmallFile(b *testing.B) {
	data := make([]byte, 4096)
	b.Run("colocated", func(b *testing.B) {
		c := newCluster(b, 3, Options{})
		dir := must(c.d.Mkdir(bg, xl.RootGFID, "d", xl.NewGFID(), 0o755))(b)
		b.ResetTimer()
		for i := range b.N {
			fd, _, e := c.d.Create(bg, dir.GFID, fmt.Sprint(i), xl.NewGFID(), syscall.O_RDWR, 0o644)
			if e == 0 {
				_, e = c.d.Write(bg, fd, data, 0)
				c.d.Release(bg, fd)
			}
			if e == 0 {
				_, e = c.d.Getattr(bg, fd.GFID)
			}
			if e != 0 {
				b.Fatal(e)
			}
		}
	})
	b.Run("separated", func(b *testing.B) {
		c := newCluster(b, 3, Options{})
		dir := must(c.d.Mkdir(bg, xl.RootGFID, "d", xl.NewGFID(), 0o755))(b)
		home := c.d.Layout().Set(TokenOf(dir.GFID))
		ds := c.counts[(home+1)%3]
		ok(b, c.d.anchor(bg, (home+1)%3, 0))
		b.ResetTimer()
		for i := range b.N {
			dg := NewGFID(0)
			// The metadata inode, named in the directory.
			fd, _, e := c.d.Create(bg, dir.GFID, fmt.Sprint(i), xl.NewGFID(), syscall.O_RDWR, 0o644)
			if e == 0 {
				c.d.Release(bg, fd)
				// The data inode on the data set.
				var dfd xl.Fd
				dfd, _, e = ds.Create(bg, bucket(0), fmt.Sprint(i), dg, syscall.O_RDWR, 0o644)
				if e == 0 {
					_, e = ds.Write(bg, dfd, data, 0)
					ds.Release(bg, dfd)
				}
			}
			if e == 0 {
				_, e = c.d.Getattr(bg, fd.GFID)
			}
			if e == 0 {
				_, e = ds.Getattr(bg, dg)
			}
			if e != 0 {
				b.Fatal(e)
			}
		}
	})
}

// BenchmarkMigrateEmptyToken is the cost of moving a token that holds
// nothing, as most of a young volume's do, between in-process sets.
func BenchmarkMigrateEmptyToken(b *testing.B) {
	c := newClusterOf(b, 4, 3, Options{})
	b.ResetTimer()
	for i := range b.N {
		tok := uint16(1 + i%(Tokens/3-1))
		if err := c.d.MigrateToken(bg, tok, 3, nil); err != nil {
			b.Fatal(err)
		}
	}
}
