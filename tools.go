//go:build tools

// Package tunnel pins dependencies that helpers are about to use; removed once real code imports them.
package tunnel
import (
 _ "github.com/tetratelabs/wazero"
 _ "github.com/hashicorp/hcl/v2"
 _ "github.com/hashicorp/hcl/v2/gohcl"
 _ "github.com/fsnotify/fsnotify"
 _ "go.uber.org/goleak"
)
