// Package readme holds the test that compiles every Go block of the
// repository's README.md, so that the README's code cannot rot, and the
// test that every field docs/configuration.md's table names exists. It
// has no code of its own.
package readme
