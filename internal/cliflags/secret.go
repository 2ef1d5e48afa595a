package cliflags

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// ReadSecret reads a secret from a file, without its trailing newline; an
// empty one is an error.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// Secret is the value of flag name, or the content of the file that flag
// name-file names (which keeps the secret out of argv); not both.
func Secret(c *cli.Context, name string) (string, error) {
	v, f := c.String(name), c.String(name+"-file")
	if v != "" && f != "" {
		return "", fmt.Errorf("--%s and --%s-file are alternatives; give one", name, name)
	}
	if f == "" {
		return v, nil
	}
	s, err := ReadSecret(f)
	if err != nil {
		return "", fmt.Errorf("--%s-file: %w", name, err)
	}
	return s, nil
}

// Files is the content of each file the string slice flag name lists.
func Files(c *cli.Context, name string) ([]string, error) {
	var out []string
	for _, f := range c.StringSlice(name) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
		out = append(out, string(b))
	}
	return out, nil
}
