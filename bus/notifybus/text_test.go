package notifybus_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"

	"github.com/meshmon/meshmon/bus/notifybus"
)

// TestWriteLogJSON: one attempt a line, each a whole JSON object.
func TestWriteLogJSON(t *testing.T) {
	log := []notifybus.Attempt{{Channel: "ops", Item: "a1", Outcome: "delivered"}, {Channel: "ops", Item: "a1.e1", Outcome: "failed", Error: "503"}}
	var b bytes.Buffer
	if err := notifybus.WriteLogJSON(&b, log); err != nil {
		t.Fatal(err)
	}
	var got []notifybus.Attempt
	for sc := bufio.NewScanner(&b); sc.Scan(); {
		var a notifybus.Attempt
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, a)
	}
	if len(got) != 2 || got[1].Item != "a1.e1" || got[1].Error != "503" {
		t.Errorf("read back %+v, want the two attempts", got)
	}
}
