// Package examples holds services to copy: programs built on herd as a
// real service would use it, in a module of their own so that the core
// module gains no dependency from them.
//
// Its test checks that every Go block of the repository's README files
// compiles (see TestREADMEBlocksCompile).
package examples
