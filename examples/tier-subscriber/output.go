package main

import (
	"encoding/json"
	"io"
)

// Output writes one JSON document per line, each as soon as it is known.
type Output struct {
	encoder *json.Encoder
	err     error
}

// NewOutput writes to w.
func NewOutput(w io.Writer) *Output {
	encoder := json.NewEncoder(w)
	encoder.SetEscapeHTML(false)
	return &Output{encoder: encoder}
}

// Line writes one line; after a failed write it writes nothing more (see Err).
func (o *Output) Line(line any) {
	if o.err == nil {
		o.err = o.encoder.Encode(line)
	}
}

// Err is the first write that failed: the reader has gone, so the program should stop.
func (o *Output) Err() error {
	return o.err
}
