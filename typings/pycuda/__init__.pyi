# Local stubs for the part of pycuda edgeseg calls (pycuda publishes no type information).
