package journey

import (
	"encoding/base32"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// storeIDs are n distinct instance ids shaped like the store's (store.NewID,
// which this package cannot import): "ins_" then 26 base32 characters, 48
// bits of milliseconds then 80 random bits. They are created in bursts, so
// that many share their time prefix, as instances entering together do.
func storeIDs(t *rapid.T, n int) []string {
	enc := base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)
	rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 0))
	ms := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + rapid.Int64Range(0, 1e12).Draw(t, "start")
	burst := rapid.IntRange(1, 500).Draw(t, "burst")
	seen := make(map[string]bool, n)
	ids := make([]string, 0, n)
	for len(ids) < n {
		if len(ids)%burst == 0 {
			ms += rng.Int64N(60_000)
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], uint64(ms)<<16)
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		binary.BigEndian.PutUint16(b[6:8], uint16(rng.Uint32()))
		id := "ins_" + strings.ToLower(enc.EncodeToString(b[:]))
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// TestPropertyInRollout: a gradual migration at percent moves about that
// share of the instances (within 5 points over a few thousand), nobody at
// 0, everybody at 100, and raising the percent never drops anyone moved.
func TestPropertyInRollout(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ids := storeIDs(t, rapid.IntRange(2000, 4000).Draw(t, "instances"))
		percent := rapid.IntRange(0, 100).Draw(t, "percent")
		higher := rapid.IntRange(percent, 100).Draw(t, "higher")
		in := 0
		for _, id := range ids {
			moved := InRollout(id, percent)
			if moved {
				in++
			}
			if InRollout(id, 0) || !InRollout(id, 100) {
				t.Fatalf("%s: in at 0 %v, at 100 %v", id, InRollout(id, 0), InRollout(id, 100))
			}
			if moved && !InRollout(id, higher) {
				t.Fatalf("%s moved at %d%%, not at %d%%", id, percent, higher)
			}
			if InRollout(id, percent) != moved {
				t.Fatalf("%s: two answers at %d%%", id, percent)
			}
		}
		if share := 100 * float64(in) / float64(len(ids)); share < float64(percent)-5 || share > float64(percent)+5 {
			t.Fatalf("%.1f%% of %d instances in a %d%% rollout", share, len(ids), percent)
		}
	})
}
