// Command ferretdb-launcher runs an embedded FerretDB 1.x with its SQLite
// backend: a MongoDB-wire-protocol server for local development and tests.
//
// `go install` of FerretDB's own command builds a binary that panics at start
// (it expects build/version/version.txt); embedding the library avoids that.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "", "directory holding the SQLite databases (created if missing)")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *dir == "" {
		logger.Error("-dir is required")
		os.Exit(2)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		logger.Error("bad -dir", "error", err)
		os.Exit(2)
	}
	if err = os.MkdirAll(abs, 0o755); err != nil {
		logger.Error("cannot create -dir", "error", err)
		os.Exit(2)
	}

	// The SQLite URL must use the file: scheme and end with a slash.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		logger.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("listening", "address", *listen, "dir", abs)
	if err = f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
	logger.Info("stopped")
}
