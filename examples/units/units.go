// Package units converts between units of temperature and length.
package units

import "fmt"

// CelsiusToFahrenheit converts degrees Celsius to degrees Fahrenheit.
func CelsiusToFahrenheit(c float64) float64 {
	return c*9/5 + 32
}

// FahrenheitToCelsius converts degrees Fahrenheit to degrees Celsius.
func FahrenheitToCelsius(f float64) float64 {
	return (f - 32) * 5 / 9
}

// KilometresToMiles converts kilometres to miles.
func KilometresToMiles(km float64) float64 {
	return km / 1.609344
}

// Format shows a value with its unit, rounded to two decimals.
func Format(value float64, unit string) string {
	return fmt.Sprintf("%.2f %s", value, unit)
}
