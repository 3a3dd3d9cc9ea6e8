package units

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCelsiusToFahrenheit(t *testing.T) {
	if got := CelsiusToFahrenheit(100); !near(got, 212) {
		t.Fatalf("CelsiusToFahrenheit(100) = %v, want 212", got)
	}
}

func TestFahrenheitToCelsius(t *testing.T) {
	if got := FahrenheitToCelsius(32); !near(got, 0) {
		t.Fatalf("FahrenheitToCelsius(32) = %v, want 0", got)
	}
}

func TestKilometresToMiles(t *testing.T) {
	if got := KilometresToMiles(1.609344); !near(got, 1) {
		t.Fatalf("KilometresToMiles(1.609344) = %v, want 1", got)
	}
}

func TestFormat(t *testing.T) {
	if got := Format(3.14159, "km"); got != "3.14 km" {
		t.Fatalf("Format = %q, want %q", got, "3.14 km")
	}
}
