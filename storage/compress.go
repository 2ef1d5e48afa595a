package storage

import (
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"
)

// minCompress is the shortest payload worth compressing: below it there is
// little to gain.
const minCompress = 64

// maxDecoded bounds what one spool entry may decompress to, so a damaged
// entry cannot make the poller allocate without limit. A message is at most
// the peer's max payload (8 MiB at most in NATS).
const maxDecoded = 16 << 20

// Why S2 (a Snappy extension) and not zstd: on a 512 B event zstd's
// fastest level saved a fifth more (328 B against 417 B) but took about six
// times the CPU of S2 to write and more to read (zstd resets its tables
// for every small input), on a path that takes 40,000 traps a second.
// Both keep a spooled event well under 1 KB on disk.

// compressData appends data, S2-compressed (block format), to b.
func compressData(b, data []byte) []byte {
	b = slices.Grow(b, s2.MaxEncodedLen(len(data)))
	out := s2.Encode(b[len(b):cap(b)], data)
	return b[:len(b)+len(out)]
}

var errEmptyBlock = errors.New("empty compressed block")

// decompressData returns the data of one S2 block, in memory of its own.
func decompressData(block []byte) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if n > maxDecoded {
		return nil, fmt.Errorf("decodes to %d bytes, more than %d", n, maxDecoded)
	}
	if n == 0 {
		// encodeMessage never compresses an empty payload: a block that
		// holds nothing is not one of ours.
		return nil, errEmptyBlock
	}
	return s2.Decode(make([]byte, n), block)
}
