package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/pki"
)

func tlsCommand() *cli.Command {
	return &cli.Command{
		Name:  "tls",
		Usage: "the mesh's certificate authority: make it, issue peer certificates",
		Subcommands: []*cli.Command{{
			Name:  "ca",
			Usage: "make the mesh's CA in a directory (ca.pem, and ca-key.pem with mode 0600)",
			Description: "Keep ca-key.pem off the peers: it issues certificates that route members trust.\n" +
				"ca.pem goes to every peer (--tls-ca) and every client (--tlsca, nats --tlsca).",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", Required: true, Usage: "directory for the CA (made if missing; an existing CA is not replaced)"},
				&cli.StringFlag{Name: "name", Value: "meshmon mesh CA", Usage: "the CA's common name"},
				&cli.BoolFlag{Name: "exist-ok", Usage: "a CA that is there already is no error (for scripts run more than once)"},
				jsonFlag(),
			},
			Action: tlsCA,
		}, {
			Name:  "issue",
			Usage: "issue a peer's certificate (cert.pem, key.pem with mode 0600, and a copy of ca.pem) into a directory",
			Description: "--host lists every name and address clients, sites and route members dial the peer by:\n" +
				"the certificate is verified against it. Issue again (same --out-dir) to rotate; the running peer\n" +
				"takes the new files on SIGHUP.\n\n" +
				"With several --name (a compose file's one-shot service), each certificate goes to OUT-DIR/NAME,\n" +
				"is valid for its name as a host too, and OUT-DIR/ca.pem is the CA for clients.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "ca-dir", Required: true, Usage: "the CA's directory (meshmon tls ca --dir)"},
				&cli.BoolFlag{Name: "init-ca", Usage: "make the CA in --ca-dir first if there is none"},
				&cli.StringSliceFlag{Name: "name", Required: true, Usage: "the certificate's common name (the peer's name); repeat it for several peers"},
				&cli.StringSliceFlag{Name: "host", Usage: "DNS names and IP addresses the peer is dialled by, comma separated"},
				&cli.StringFlag{Name: "out-dir", Required: true, Usage: "directory for cert.pem, key.pem and ca.pem"},
				&cli.DurationFlag{Name: "validity", Value: pki.CertValidity, Usage: "how long the certificate is valid"},
				jsonFlag(),
			},
			Action: tlsIssue,
		}},
	}
}

func tlsCA(c *cli.Context) error {
	dir := c.String("dir")
	if c.Bool("exist-ok") {
		if ca, err := pki.LoadCA(dir); err == nil {
			return printCA(c, dir, ca, "exists")
		}
	}
	ca, err := pki.NewCA(c.String("name"), time.Now())
	if err != nil {
		return err
	}
	if err := ca.Save(dir); err != nil {
		return err
	}
	return printCA(c, dir, ca, "made")
}

func printCA(c *cli.Context, dir string, ca *pki.CA, verb string) error {
	cert := filepath.Join(dir, pki.CAFile)
	return output(c, map[string]any{"result": verb, "ca": cert, "key": filepath.Join(dir, pki.CAKey), "not_after": ca.Cert.NotAfter.UTC()}, "CA %s in %s (valid until %s); keep %s off the peers\n", verb, cert, ca.Cert.NotAfter.UTC().Format(time.DateOnly), pki.CAKey)
}

func tlsIssue(c *cli.Context) error {
	ca, err := pki.OpenCA(c.String("ca-dir"), "meshmon mesh CA", c.Bool("init-ca"), time.Now())
	if err != nil {
		return err
	}
	done, err := ca.IssueInto(c.String("out-dir"), c.StringSlice("name"), c.StringSlice("host"), time.Now(), c.Duration("validity"))
	if err != nil {
		return err
	}
	if c.Bool("json") && len(done) == 1 {
		return printJSON(os.Stdout, done[0])
	}
	return showList(c, done, pki.WriteIssued)
}
