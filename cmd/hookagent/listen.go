package main

import (
	"context"
	"errors"
)

// runListen is `hookagent listen` (developer mode). Placeholder until it is built.
func runListen(ctx context.Context, args []string) error {
	return errors.New("listen: not built yet")
}
