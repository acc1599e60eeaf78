// Declarations only (include/CLibFuzzer.h); the definition is in the fuzzer runtime.
#include "CLibFuzzer.h"
