package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// revisionFile is how a committed schema is named: <topic>/<n>.schema.json, n = 1, 2, ...
var revisionFile = regexp.MustCompile(`^([1-9][0-9]*)\.schema\.json$`)

// TopicSchema is the newest committed JSON Schema of one topic, compiled.
type TopicSchema struct {
	Topic    string
	Revision int
	Path     string
	schema   *jsonschema.Schema
}

// LoadSchemas compiles the newest revision of each topic's schema found under dir.
func LoadSchemas(dir string, topics []string) (map[string]*TopicSchema, error) {
	loaded := make(map[string]*TopicSchema, len(topics))
	for _, topic := range topics {
		revision, path, err := newestRevision(filepath.Join(dir, topic))
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", topic, err)
		}
		schema, err := compile(path)
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", topic, err)
		}
		loaded[topic] = &TopicSchema{Topic: topic, Revision: revision, Path: path, schema: schema}
	}
	return loaded, nil
}

// newestRevision finds the highest n of the <n>.schema.json files in a topic's directory.
func newestRevision(dir string) (int, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, "", err
	}
	best := 0
	for _, entry := range entries {
		match := revisionFile.FindStringSubmatch(entry.Name())
		if match == nil || entry.IsDir() {
			continue
		}
		n, err := strconv.Atoi(match[1])
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w", entry.Name(), err)
		}
		best = max(best, n)
	}
	if best == 0 {
		return 0, "", fmt.Errorf("no <n>.schema.json in %s", dir)
	}
	return best, filepath.Join(dir, fmt.Sprintf("%d.schema.json", best)), nil
}

func compile(path string) (*jsonschema.Schema, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	doc, err := jsonschema.UnmarshalJSON(file)
	if err != nil {
		return nil, fmt.Errorf("%s is not JSON: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	url := "file://" + filepath.ToSlash(abs)
	compiler := jsonschema.NewCompiler()
	// As draft 2020-12 has it, "format" is only noted: the committed schemas say with
	// "pattern" which timestamps the services accept (a space for the T, no seconds, ...).
	compiler.DefaultDraft(jsonschema.Draft2020)
	if err := compiler.AddResource(url, doc); err != nil {
		return nil, err
	}
	return compiler.Compile(url)
}

// Validate checks a message value; the error names where and which keyword failed, never a value.
func (s *TopicSchema) Validate(value []byte) error {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(value)))
	if err != nil {
		return errors.New("not JSON")
	}
	err = s.schema.Validate(doc)
	if err == nil {
		return nil
	}
	verr, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return fmt.Errorf("%s schema %d: %w", s.Topic, s.Revision, err)
	}
	problems := failures(verr, nil)
	slices.Sort(problems)
	reasons := strings.Join(slices.Compact(problems), "; ")
	return fmt.Errorf("%s schema %d: %s", s.Topic, s.Revision, reasons)
}

// failures describes the innermost failing keywords; a failed anyOf/oneOf is one failure,
// not one per branch. The validator's own messages are not used: they quote values.
func failures(err *jsonschema.ValidationError, into []string) []string {
	switch err.ErrorKind.(type) {
	case *kind.AnyOf, *kind.OneOf:
		return append(into, describe(err))
	}
	if len(err.Causes) == 0 {
		return append(into, describe(err))
	}
	for _, cause := range err.Causes {
		into = failures(cause, into)
	}
	return into
}

func describe(err *jsonschema.ValidationError) string {
	at := "/" + strings.Join(err.InstanceLocation, "/")
	keyword := strings.Join(err.ErrorKind.KeywordPath(), "/")
	switch k := err.ErrorKind.(type) {
	case *kind.Required:
		return fmt.Sprintf("%s: required %s missing", at, strings.Join(k.Missing, ", "))
	case *kind.Type:
		return fmt.Sprintf("%s: type %s, want %s", at, k.Got, strings.Join(k.Want, " or "))
	}
	return fmt.Sprintf("%s: fails %s", at, keyword)
}
