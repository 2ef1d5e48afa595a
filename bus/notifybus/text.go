package notifybus

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteLog writes delivery attempts as a table, times in local time.
func WriteLog(out io.Writer, log []Attempt) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tCHANNEL\tOUTCOME\tITEM\tDELIVERY\tERROR")
	for _, a := range log {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.At.Local().Format(time.DateTime), a.Channel, a.Outcome, a.Item, a.Delivery, a.Error)
	}
	return w.Flush()
}

// WriteLogJSON writes delivery attempts as JSON, one object a line (what
// 'notify log --json' prints, for tools that read a line at a time).
func WriteLogJSON(out io.Writer, log []Attempt) error {
	enc := json.NewEncoder(out)
	for _, a := range log {
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return nil
}
