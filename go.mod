module gateagent

go 1.26
