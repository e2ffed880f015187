module gateagent

go 1.26

require (
	github.com/makiuchi-d/gozxing v0.1.1
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/creack/goselect v0.1.2 // indirect
	github.com/jonboulle/clockwork v0.4.0 // indirect
	go.bug.st/serial v1.8.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/text v0.3.7 // indirect
	golang.org/x/xerrors v0.0.0-20200804184101-5ec99f83aff1 // indirect
	periph.io/x/conn/v3 v3.7.2 // indirect
	periph.io/x/host/v3 v3.8.5 // indirect
)
