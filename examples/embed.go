// Package examples holds the scenarios users try first; the demo's app is embedded in podnet.
package examples

import _ "embed"

// Demo is the app `podnet demo` applies.
//
//go:embed demo.yaml
var Demo []byte

// DemoPolicy is the NetworkPolicy `podnet demo` applies to the app.
//
//go:embed demo-policy.yaml
var DemoPolicy []byte
