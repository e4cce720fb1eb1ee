package single_test

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/single"
)

// A cache of one configuration object, refreshed in the background once a
// minute; reads cost one atomic load.
func Example() {
	ctx := context.Background()
	config := herd.New[string](single.New[string](), herd.RefreshAfter(time.Minute))
	defer config.Close(ctx)

	loads := 0
	load := func(context.Context, string) (string, error) {
		loads++
		return "feature-x=on", nil
	}
	for range 3 {
		v, _ := config.Get(ctx, "config", load)
		fmt.Println(v)
	}
	fmt.Println("loads:", loads)
	// Output:
	// feature-x=on
	// feature-x=on
	// feature-x=on
	// loads: 1
}
