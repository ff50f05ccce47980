package bench

import (
	"os"
	"testing"
)

// Lines as a 6.x kernel prints them: a loop device, the disk, and a
// partition of another disk, with the 17 counters of 5.5 and later.
const diskstatsFixture = `   7       0 loop0 12 0 30 1 0 0 0 0 0 4 1 0 0 0 0 0 0
 254       0 vda 57176980 31 1642606962 100 67996672 8 5527063824 200 0 300 400 31024839 0 8155372824 500 0 0
 259       1 nvme0n1p1 5 0 10 1 7 0 64 2 0 3 3 0 0 0 0 0 0
`

func TestParseDiskstatsPicksTheDevice(t *testing.T) {
	got, err := parseDiskstats([]byte(diskstatsFixture), diskDev{254, 0})
	if err != nil {
		t.Fatal(err)
	}
	if want := (diskIO{written: 5527063824 * 512, discarded: 8155372824 * 512}); got != want {
		t.Fatalf("vda: got %+v, want %+v", got, want)
	}
	got, err = parseDiskstats([]byte(diskstatsFixture), diskDev{259, 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := (diskIO{written: 64 * 512}); got != want {
		t.Fatalf("partition: got %+v, want %+v", got, want)
	}
	if _, err := parseDiskstats([]byte(diskstatsFixture), diskDev{8, 0}); err == nil {
		t.Fatal("a device not listed read as counters")
	}
}

// Kernels before 4.18 print 11 counters and no discards.
func TestParseDiskstatsWithoutDiscards(t *testing.T) {
	got, err := parseDiskstats([]byte("   8       0 sda 1 2 3 4 5 6 4096 8 9 10 11\n"), diskDev{8, 0})
	if err != nil {
		t.Fatal(err)
	}
	if want := (diskIO{written: 4096 * 512}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestDiskNote(t *testing.T) {
	for _, c := range []struct {
		d     diskIO
		wrote int64
		want  string
	}{
		{diskIO{written: 6 << 20}, 1 << 20, "disk wrote 6.0x the data"},
		{diskIO{written: 3 << 20, discarded: 2 << 20}, 1 << 20, "disk wrote 3.0x the data, discarded 2.0x"},
		{diskIO{written: 1 << 20}, 0, ""},
		{diskIO{written: 1 << 20, discarded: 1 << 10}, 1 << 20, "disk wrote 1.0x the data"}, // a stray discard
	} {
		if got := diskNote(c.d, c.wrote); got != c.want {
			t.Errorf("diskNote(%+v, %d) = %q, want %q", c.d, c.wrote, got, c.want)
		}
	}
	if got := (diskIO{written: 5}).sub(diskIO{written: 9, discarded: 0}); got != (diskIO{}) {
		t.Errorf("a counter that went backwards gave %+v", got)
	}
}

// The work directory's disk is readable here, and a write to it shows.
func TestReadDiskIOSeesAWrite(t *testing.T) {
	dir := t.TempDir()
	dev, err := diskOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, err := readDiskIO(dev)
	if err != nil {
		t.Skipf("the temporary directory is on no block device /proc/diskstats lists (%v)", err)
	}
	f, err := os.Create(dir + "/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	after, err := readDiskIO(dev)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.sub(before); d.written < 1<<20 {
		t.Fatalf("an fsynced 1 MiB write moved the disk's written bytes by %d", d.written)
	}
}
