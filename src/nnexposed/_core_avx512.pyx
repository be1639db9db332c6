include "_core.pyx"
