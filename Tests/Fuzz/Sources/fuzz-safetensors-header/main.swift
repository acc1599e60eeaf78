import FuzzSupport

runFuzzer(fuzzOneInput)
