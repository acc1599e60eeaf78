// libFuzzer's entry point for programs that keep their own main (part of the sanitizer runtime that
// `-sanitize=fuzzer` links). SwiftPM gives every executable its own main on Linux, so each fuzz target calls this
// from main.swift instead of letting libFuzzer's main call LLVMFuzzerTestOneInput.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
