package main

import (
	"context"
	"errors"
)

// runDemo runs a relay, an agent and a sample target on loopback (hookrelay demo).
// Placeholder: the lead replaces this file.
func runDemo(ctx context.Context, args []string) error {
	return errors.New("demo: not built yet")
}
