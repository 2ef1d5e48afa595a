package cliflags

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon"
)

// sizeValue is a byte size flag that takes units: 10GiB, 512MB, 1048576.
type sizeValue struct{ n int64 }

func (v *sizeValue) Set(s string) error {
	n, err := meshmon.ParseSize(s)
	if err != nil {
		return err
	}
	v.n = n
	return nil
}

func (v *sizeValue) String() string {
	if v == nil {
		return ""
	}
	return meshmon.FormatSize(v.n)
}

// ageValue is a duration flag that also takes days and weeks: 30d, 2w, 12h.
type ageValue struct{ d time.Duration }

func (v *ageValue) Set(s string) error {
	d, err := meshmon.ParseAge(s)
	if err != nil {
		return err
	}
	v.d = d
	return nil
}

func (v *ageValue) String() string {
	if v == nil {
		return ""
	}
	return meshmon.FormatAge(v.d)
}

// SizeFlag is a byte size flag: 512MiB, 10GiB, 1TB or bytes.
func SizeFlag(name string, def int64, env []string, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Value: &sizeValue{def}, EnvVars: env, Usage: usage + " (bytes, or with a unit: 512MiB, 10GiB, 1TB)"}
}

// AgeFlag is a duration flag that also takes days and weeks.
func AgeFlag(name string, def time.Duration, env []string, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Value: &ageValue{def}, EnvVars: env, Usage: usage + " (30d, 2w, 12h, 90m)"}
}

// SizeOf and AgeOf read a flag made by SizeFlag or AgeFlag.
func SizeOf(c *cli.Context, name string) int64 { return c.Generic(name).(*sizeValue).n }

func AgeOf(c *cli.Context, name string) time.Duration { return c.Generic(name).(*ageValue).d }
