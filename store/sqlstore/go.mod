module github.com/sessionlock/sessionlock/store/sqlstore

go 1.26.0

require (
	github.com/jackc/pgx/v5 v5.12.0
	github.com/sessionlock/sessionlock v0.0.0
	github.com/stretchr/testify v1.12.1
)

require (
	github.com/bradfitz/gomemcache v0.0.0-20260422231931-4d751bb6e37c // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)

replace github.com/sessionlock/sessionlock => ../..
