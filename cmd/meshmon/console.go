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
		&cli.IntFlag{Name: "console-login-failures", Value: def.LoginFailures, EnvVars: env("CONSOLE_LOGIN_FAILURES"), Usage: "central: this many logins central refused within --console-login-window, from one address or for one user, lock it out"},
		&cli.DurationFlag{Name: "console-login-window", Value: def.LoginWindow, EnvVars: env("CONSOLE_LOGIN_WINDOW"), Usage: "central: the window the console counts refused logins over"},
		&cli.DurationFlag{Name: "console-login-lockout", Value: def.LoginLockout, EnvVars: env("CONSOLE_LOGIN_LOCKOUT"), Usage: "central: how long a locked-out address or user is refused (429)"},
	}
}

// checkConsoleFlags refuses the console on a site peer, login limits that
// would not limit, and a console on a central that authenticates no
// client, before the peer starts.
func checkConsoleFlags(c *cli.Context, cfg *peer.Config) error {
	switch {
	case c.String("console-listen") != "" && cfg.Role != peer.RoleCentral:
		return fmt.Errorf("--console-listen: only a central peer (--role central) serves the console")
	case c.Int("console-login-failures") < 1:
		return fmt.Errorf("--console-login-failures: %d: must be at least 1", c.Int("console-login-failures"))
	case c.Duration("console-login-window") <= 0:
		return fmt.Errorf("--console-login-window: %s: must be positive", c.Duration("console-login-window"))
	case c.Duration("console-login-lockout") <= 0:
		return fmt.Errorf("--console-login-lockout: %s: must be positive", c.Duration("console-login-lockout"))
	case c.String("console-listen") != "" && cfg.Trust == "" && cfg.Auth.None():
		// The console logs a user in by connecting with what the user
		// gave; a server that authenticates nobody takes any .creds
		// (it maps every client to its one user), so the console would
		// show everything to whoever reached it.
		return fmt.Errorf("--console-listen: this central authenticates no client (no --trust, --auth-user or --auth-nkey), so the console could not tell one login from another; give it --trust, or --auth-user and --auth-password-file")
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
	if p.Server().AccountResolver() != nil {
		// Operator mode: the ops credential's replays read the tenants'
		// streams through central's own connections (the connections
		// end with the peer's server).
		te, err := p.TenantEvents()
		if err != nil {
			return nil, fmt.Errorf("--console-listen: %w", err)
		}
		cfg.Tenants = te
	}
	cfg.PasswordLogin = pc.Trust == "" && pc.Auth.User != ""
	cfg.SessionIdle, cfg.SessionMax = c.Duration("console-session-idle"), c.Duration("console-session-max")
	cfg.LoginFailures, cfg.LoginWindow, cfg.LoginLockout = c.Int("console-login-failures"), c.Duration("console-login-window"), c.Duration("console-login-lockout")
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
