module github.com/backprop/bp/bindings/go

go 1.21
