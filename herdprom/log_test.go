package herdprom_test

import (
	"io"
	"log/slog"
)

var slogDiscard = slog.New(slog.NewTextHandler(io.Discard, nil))
