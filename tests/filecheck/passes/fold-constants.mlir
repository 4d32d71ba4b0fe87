// RUN: tinymlir-opt %s --split-input-file -p fold-constants | filecheck %s
// RUN: tinymlir-opt %s --split-input-file -p 'fold-constants{max-elements=3}' | filecheck %s --check-prefix=SMALL

// A transposed float weight becomes one constant.
// CHECK-LABEL: func.func @transpose
// CHECK-NEXT:  %[[T:.*]] = arith.constant dense<{{\[}}[1.000000e+00, 3.000000e+00], [2.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
// CHECK-NEXT:  func.return %[[T]]
// With max-elements=3 the 4-element result is kept.
// SMALL-LABEL: func.func @transpose
// SMALL:       nn.transpose
func.func @transpose() -> tensor<2x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %t = nn.transpose %w {perm = array<i64: 1, 0>} : (tensor<2x2xf32>) -> tensor<2x2xf32>
  func.return %t : tensor<2x2xf32>
}

// -----

// Dequantize of a constant, then arithmetic on it: the whole chain folds.
// CHECK-LABEL: func.func @dequantize_chain
// CHECK-NEXT:  %[[C:.*]] = arith.constant dense<[0.000000e+00, 2.500000e+00]> : tensor<2xf32>
// CHECK-NEXT:  %[[Y:.*]] = nn.add %{{.*}}, %[[C]]
func.func @dequantize_chain(%x: tensor<2xf32>) -> tensor<2xf32> {
  %q = quant.constant dense<[-2, 3]> : tensor<2xi8> -> tensor<2x!quant.uniform<i8:f32, 0.5:0>>
  %d = quant.dequantize %q : tensor<2x!quant.uniform<i8:f32, 0.5:0>> -> tensor<2xf32>
  %one = arith.constant dense<1.0> : tensor<2xf32>
  %s = nn.add %d, %one : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  %y = nn.add %x, %s : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  func.return %y : tensor<2xf32>
}

// -----

// A float constant through quantize and a transpose (data movement on the stored
// integers) becomes a quant.constant.
// CHECK-LABEL: func.func @quantize_transpose
// CHECK-NEXT:  %[[Q:.*]] = quant.constant dense<{{\[}}[2, 127], [-1, -128]]> : tensor<2x2xi8> -> tensor<2x2x!quant.uniform<i8:f32, 0.5:0>>
// CHECK-NEXT:  func.return %[[Q]]
func.func @quantize_transpose() -> tensor<2x2x!quant.uniform<i8:f32, 0.5:0>> {
  %f = arith.constant dense<[[1.0, -0.5], [100.0, -100.0]]> : tensor<2x2xf32>
  %q = quant.quantize %f : tensor<2x2xf32> -> tensor<2x2x!quant.uniform<i8:f32, 0.5:0>>
  %y = nn.transpose %q {perm = array<i64: 1, 0>} : (tensor<2x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<2x2x!quant.uniform<i8:f32, 0.5:0>>
  func.return %y : tensor<2x2x!quant.uniform<i8:f32, 0.5:0>>
}

// -----

// Negative: an operand that is not a constant.
// CHECK-LABEL: func.func @not_constant
// CHECK:       nn.relu %arg0
func.func @not_constant(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  %y = nn.relu %arg0 : (tensor<2xf32>) -> tensor<2xf32>
  func.return %y : tensor<2xf32>
}
