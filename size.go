package meshmon

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the units ParseSize knows: SI (kB = 1000) and IEC
// (KiB = 1024), case-insensitive; a bare K, M, G, T is IEC.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize reads a byte size: a plain number of bytes ("1048576") or a
// number with a unit ("512MiB", "10GB", "1.5g"). Negative sizes are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// FormatSize writes n bytes with the largest IEC unit that divides it
// ("10GiB", "1536B" stays "1536B" unless it divides).
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		v    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseAge reads a duration that may use days and weeks as well as Go's
// units: "30d", "2w", "1d12h", "90m". Negative ages are errors.
func ParseAge(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var total time.Duration
	rest := t
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		if num == "" || unit == "" {
			return 0, fmt.Errorf("age %q: want a number with a unit, like 30d, 2w, 12h or 90m", s)
		}
		var d time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("age %q: %q is not a number", s, num)
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			// Converting a float above MaxInt64 to an integer is
			// implementation-defined: a negative age on amd64.
			if v := f * float64(day); v < math.MaxInt64 {
				d = time.Duration(v)
			} else {
				return 0, fmt.Errorf("age %q is too large; at most %s", s, FormatAge(math.MaxInt64))
			}
		default:
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, fmt.Errorf("age %q: want a number with a unit, like 30d, 2w, 12h or 90m", s)
			}
		}
		if d > math.MaxInt64-total {
			return 0, fmt.Errorf("age %q is too large; at most %s", s, FormatAge(math.MaxInt64))
		}
		total += d
		rest = rest[j:]
	}
	if t == "" {
		return 0, fmt.Errorf("age %q: want a number with a unit, like 30d, 2w, 12h or 90m", s)
	}
	return total, nil
}

// FormatAge writes d in days when it is a whole number of days ("30d"),
// else as a Go duration.
func FormatAge(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// ShowSize writes n bytes for people: exact as FormatSize when a unit
// divides it, else to one decimal of the largest unit it reaches
// ("9.4GiB").
func ShowSize(n int64) string {
	exact := FormatSize(n)
	if strings.HasSuffix(exact, "iB") || n < 1<<10 {
		return exact
	}
	for _, u := range []struct {
		name string
		v    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.v {
			return strconv.FormatFloat(float64(n)/float64(u.v), 'f', 1, 64) + u.name
		}
	}
	return exact
}
