package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/console"
	"github.com/meshmon/meshmon/peer"
)

// consoleFlags are peer run's flags of the web console.
func consoleFlags(env func(string) []string) []cli.Flag {
	def := console.DefaultConfig()
	return []cli.Flag{
		&cli.StringFlag{Name: "console-listen", EnvVars: env("CONSOLE_LISTEN"), Usage: "central: serve the web console on host:port (a host left out means 127.0.0.1), HTTPS with the peer's certificate (plaintext only with --insecure); users log in with their .creds (off when empty)"},
		&cli.DurationFlag{Name: "console-session-idle", Value: def.SessionIdle, EnvVars: env("CONSOLE_SESSION_IDLE"), Usage: "central: a console session unused this long ends"},
		&cli.DurationFlag{Name: "console-session-max", Value: def.SessionMax, EnvVars: env("CONSOLE_SESSION_MAX"), Usage: "central: a console session ends this long after login"},
	}
}

// checkConsoleFlags refuses the console on a site peer, before it starts.
func checkConsoleFlags(c *cli.Context, role string) error {
	if c.String("console-listen") != "" && role != peer.RoleCentral {
		return fmt.Errorf("--console-listen: only a central peer (--role central) serves the console")
	}
	return nil
}

// startConsole starts the console of a started central peer, when
// --console-listen asks for one; nil without.
func startConsole(c *cli.Context, p *peer.Peer, log *slog.Logger) (*console.Server, error) {
	addr := c.String("console-listen")
	if addr == "" {
		return nil, nil
	}
	pc := p.Config()
	cfg := console.DefaultConfig()
	cfg.Listen, cfg.TLS, cfg.Insecure = addr, p.ServerTLS(), pc.Insecure
	cfg.Dial = p.DialAs
	if ar := p.Server().AccountResolver(); ar != nil {
		cfg.AccountJWT = ar.Fetch
	}
	cfg.PasswordLogin = pc.Trust == "" && pc.Auth.User != ""
	cfg.SessionIdle, cfg.SessionMax = c.Duration("console-session-idle"), c.Duration("console-session-max")
	cfg.Log = log
	s, err := console.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("--console-listen: %w", err)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// consoleURL is the console's URL for peer run --json; empty without one.
func consoleURL(s *console.Server) string {
	if s == nil {
		return ""
	}
	return s.URL()
}
