// Package cliflags extends urfave/cli v2 for meshmon's command: flags
// loaded from a YAML file (--config), positional arguments allowed among
// flags and counted from each command's ArgsUsage, one-line usage errors,
// and size and age flags with units.
package cliflags

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// ApplyConfig loads --config into the flags not set otherwise. Unknown keys
// are errors that name the key; so are values of the wrong kind.
func ApplyConfig(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: not valid YAML: %s", path, strings.ReplaceAll(err.Error(), "yaml: ", ""))
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: want a mapping of flag names to values", path)
	}
	// The command's own flags and the global ones (--server, --creds, ...).
	known := make(map[string]bool)
	for _, f := range append(append([]cli.Flag{}, c.Command.Flags...), c.App.Flags...) {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	seen := make(map[string]int) // key -> line
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i].Value, root.Content[i+1]
		if !known[k] || k == "config" {
			return fmt.Errorf("config %s: line %d: unknown key %q; keys are the flag names of '%s'", path, root.Content[i].Line, k, c.Command.HelpName)
		}
		// YAML forbids repeated keys, but yaml.Node keeps them all; without
		// this the first would win and the second be ignored.
		if line, ok := seen[k]; ok {
			return fmt.Errorf("config %s: line %d: key %q repeats line %d", path, root.Content[i].Line, k, line)
		}
		seen[k] = root.Content[i].Line
		if c.IsSet(k) {
			continue // the command line and the environment win
		}
		// Values are taken as written: YAML would read 0x1f or 012345 as
		// numbers and change them.
		var val string
		switch v.Kind {
		case yaml.ScalarNode:
			val = v.Value
		case yaml.SequenceNode:
			parts := make([]string, 0, len(v.Content))
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("config %s: line %d: key %q: list items must be plain values", path, item.Line, k)
				}
				parts = append(parts, item.Value)
			}
			val = strings.Join(parts, ",")
		default:
			return fmt.Errorf("config %s: line %d: key %q: want a value or a list of values", path, v.Line, k)
		}
		// Set walks up to the command or app that owns the flag.
		if err := c.Set(k, val); err != nil {
			return fmt.Errorf("config %s: line %d: key %q: %v", path, v.Line, k, err)
		}
	}
	return nil
}
