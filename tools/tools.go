//go:build tools

// Package tools pins the versions of command-line tools that meshmon's tests
// and CI use but the product does not link. Build one with, for example:
//
//	cd tools && go build -o bin/nats github.com/nats-io/natscli/nats
//
// The build tag keeps this file out of every normal build; the blank import
// is what makes go.mod and go.sum record the tool and its dependencies.
package tools

import (
	_ "github.com/nats-io/natscli/nats"
)
