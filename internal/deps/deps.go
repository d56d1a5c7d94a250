package deps
import (
 _ "github.com/bradfitz/gomemcache/memcache"
 _ "github.com/couchbase/gocb/v2"
 _ "github.com/jackc/pgx/v5"
 _ "github.com/google/uuid"
 _ "github.com/stretchr/testify/require"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/go-chi/chi/v5"
)
