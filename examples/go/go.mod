module github.com/backprop/bp/examples/go

go 1.21

require github.com/backprop/bp/bindings/go v0.0.0

replace github.com/backprop/bp/bindings/go => ../../bindings/go
