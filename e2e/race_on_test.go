//go:build race

package e2e

// raceEnabled: under `go test -race` the servers and the Go client are built with -race too,
// and a data race report in their output fails the test.
const raceEnabled = true
