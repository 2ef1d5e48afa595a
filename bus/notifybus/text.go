package notifybus

import (
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
