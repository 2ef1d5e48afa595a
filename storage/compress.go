package storage

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// minCompress is the shortest payload worth a zstd frame: below it the
// frame's header eats what compression saves.
const minCompress = 64

// maxDecoded bounds what one spool entry may decompress to, so a damaged
// entry cannot make the poller allocate without limit. A message is at most
// the peer's max payload (8 MiB at most in NATS).
const maxDecoded = 16 << 20

// The coder is made once, when the first entry is written or read. Both
// EncodeAll and DecodeAll are safe for concurrent use.
var zstdCoder = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(4),
		zstd.WithSingleSegment(true),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(fmt.Sprintf("zstd encoder: %v", err)) // only on invalid options
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(4),
		zstd.WithDecoderMaxMemory(maxDecoded))
	if err != nil {
		panic(fmt.Sprintf("zstd decoder: %v", err))
	}
	return enc, dec
})

// compressData appends data as one zstd frame to b.
func compressData(b, data []byte) []byte {
	enc, _ := zstdCoder()
	return enc.EncodeAll(data, b)
}

var errEmptyFrame = errors.New("empty zstd frame")

// decompressData returns the data of one zstd frame, in memory of its own.
func decompressData(frame []byte) ([]byte, error) {
	_, dec := zstdCoder()
	out, err := dec.DecodeAll(frame, make([]byte, 0, 4*len(frame)))
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		// encodeMessage never compresses an empty payload: a frame that
		// holds nothing is not one of ours.
		return nil, errEmptyFrame
	}
	return out, nil
}
