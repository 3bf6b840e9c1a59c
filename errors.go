package scripthook

import (
	"errors"

	"github.com/redis/go-redis/v9"
)

func asRedisError(err error, target *redis.Error) bool { return errors.As(err, target) }
