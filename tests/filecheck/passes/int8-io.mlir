// RUN: tinymlir-opt %s --split-input-file -p int8-io | filecheck %s
// RUN: tinymlir-opt %s --split-input-file -p 'int8-io{layout=nchw}' | filecheck %s --check-prefix=NCHW

// The float input is only quantized: the function takes the int8 tensor, NHWC (or in the
// model's NCHW order), and returns the int8 logits before their dequantize.
// CHECK-LABEL: func.func @forward
// CHECK-SAME:    (%x: tensor<1x4x4x2x!quant.uniform<i8:f32, 0.5:3>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
// CHECK-NEXT:    %[[V:.*]] = nn.transpose %x {perm = array<i64: 0, 3, 1, 2>}
// CHECK-NEXT:    %[[P:.*]] = quant.global_avg_pool %[[V]]
// CHECK-NOT:     quant.quantize
// CHECK-NOT:     quant.dequantize
// CHECK:         func.return %{{.*}} : tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
// NCHW-LABEL: func.func @forward
// NCHW-SAME:    (%x: tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:3>>)
// NCHW-NEXT:    quant.global_avg_pool %x
func.func @forward(%x: tensor<1x2x4x4xf32>) -> tensor<1x2xf32> {
  %q = quant.quantize %x : tensor<1x2x4x4xf32> -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:3>>
  %p = quant.global_avg_pool %q : (tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:3>>) -> tensor<1x2x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %f = nn.flatten %p {axis = 1 : i64} : (tensor<1x2x1x1x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
  %y = quant.dequantize %f : tensor<1x2x!quant.uniform<i8:f32, 0.25:0>> -> tensor<1x2xf32>
  func.return %y : tensor<1x2xf32>
}

// -----

// An argument also used as a float stays a float argument.
// CHECK-LABEL: func.func @mixed
// CHECK-SAME:    (%x: tensor<1x2xf32>) -> tensor<1x2xf32>
// CHECK:         quant.quantize %x
func.func @mixed(%x: tensor<1x2xf32>) -> tensor<1x2xf32> {
  %q = quant.quantize %x : tensor<1x2xf32> -> tensor<1x2x!quant.uniform<i8:f32, 0.5:0>>
  %d = quant.dequantize %q : tensor<1x2x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x2xf32>
  %s = nn.add %d, %x : (tensor<1x2xf32>, tensor<1x2xf32>) -> tensor<1x2xf32>
  func.return %s : tensor<1x2xf32>
}
