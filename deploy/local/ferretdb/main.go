// Command ferretdb-launcher runs an embedded FerretDB 1.x: a MongoDB-wire-protocol
// server for local development and tests, on PostgreSQL (the default the project's
// scripts use) or on SQLite (kept for side-by-side measurements).
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
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL connection string (postgresql backend)")
	dir := flag.String("dir", "", "directory holding the SQLite databases (sqlite backend)")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	config := &ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: *listen}, Logger: logger}
	switch {
	case *postgresqlURL != "" && *dir != "":
		logger.Error("give either -postgresql-url or -dir, not both")
		os.Exit(2)
	case *postgresqlURL != "":
		config.Handler = "postgresql"
		config.PostgreSQLURL = *postgresqlURL
	case *dir != "":
		abs, err := filepath.Abs(*dir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			logger.Error("bad -dir", "error", err)
			os.Exit(2)
		}
		// The SQLite URL must use the file: scheme and end with a slash.
		config.Handler = "sqlite"
		config.SQLiteURL = "file:" + abs + "/"
	default:
		logger.Error("-postgresql-url (or -dir for SQLite) is required")
		os.Exit(2)
	}

	f, err := ferretdb.New(config)
	if err != nil {
		logger.Error("cannot start FerretDB", "error", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("listening", "address", *listen, "backend", config.Handler)
	if err = f.Run(ctx); err != nil {
		logger.Error("FerretDB stopped with an error", "error", err)
		os.Exit(1)
	}
	logger.Info("stopped")
}
