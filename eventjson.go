package meshmon

import (
	"bytes"
	"fmt"

	fastjson "github.com/segmentio/encoding/json"
)

// DecodeEvent decodes an event as encoding/json would, about four times
// faster: central's alarm processor decodes every event of every site,
// and encoding/json's reflection there was about 8 % of central's CPU in
// a catch-up (meshmon bench mesh --cpu-profile; BenchmarkDecodeEvent
// compares the two). The events come from every poller's credential, so
// it never panics (a fault of the decoder is an error, like any input it
// refuses), and it refuses JSON nested deeper than maxEventDepth before
// decoding: the decoder skips an unknown field's value by recursion, and
// took 2.2 s over a field nested a million deep, which encoding/json
// refuses at once. FuzzDecodeEvent holds it to encoding/json's result for
// whatever both accept.
func DecodeEvent(b []byte, e *Event) (err error) {
	if nestedDeeper(b, maxEventDepth) {
		return fmt.Errorf("decode event: JSON nested deeper than %d", maxEventDepth)
	}
	defer func() {
		if r := recover(); r != nil {
			*e = Event{}
			err = fmt.Errorf("decode event: %v", r)
		}
	}()
	return fastjson.Unmarshal(b, e)
}

// maxEventDepth bounds the nesting of an event's JSON. An event nests five
// deep (the event, its data, a trap, its varbinds, a varbind).
const maxEventDepth = 32

// nestedDeeper reports whether the JSON b opens more than max objects and
// arrays inside one another. It counts first: JSON with no more than max
// openers in all (most events) cannot nest deeper, and is not scanned.
func nestedDeeper(b []byte, max int) bool {
	if bytes.Count(b, []byte("{"))+bytes.Count(b, []byte("[")) <= max {
		return false
	}
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}
