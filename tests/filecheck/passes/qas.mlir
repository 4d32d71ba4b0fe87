// RUN: tinymlir-opt %s --split-input-file -p qas | filecheck %s
// RUN: tinymlir-opt %s --split-input-file -p qas,qas | filecheck %s
// RUN: sed -n '/^\/\/ -----/,$p' %s | tinymlir-opt -p 'autodiff{trainable="last:1" rounding=stochastic},qas' | filecheck %s --check-prefix=PIPE

// QAS scales the gradient of every quantized update by s^-2 per channel, right before it;
// float updates are left alone, and a second run changes nothing.
train.param @w trainable : tensor<2x3x!quant.uniform<i8:f32:0, {0.5:0, 0.25:0}>> = dense<[[1, 2, 3], [4, 5, 6]]> : tensor<2x3xi8>
train.param @b trainable : tensor<2x!quant.uniform<i32:f32:0, {0.05:0, 0.025:0}>> = dense<[10, -20]> : tensor<2xi32>
train.param @f trainable : tensor<2xf32> = dense<0.0> : tensor<2xf32>
func.func @train_step(%gw: tensor<2x3xf32>, %gb: tensor<2xf32>, %gf: tensor<2xf32>, %lr: f32) {
  %0 = train.scale_grad @w, %gw {exponent = 1 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  train.sgd @w, %0, %lr {rounding = "nearest"} : tensor<2x3xf32>
  %1 = train.scale_grad @b, %gb {exponent = 1 : i64} : (tensor<2xf32>) -> tensor<2xf32>
  train.sgd @b, %1, %lr {rounding = "nearest"} : tensor<2xf32>
  train.sgd @f, %gf, %lr : tensor<2xf32>
  func.return
}

// CHECK-LABEL: func.func @train_step(
// CHECK-SAME:      %[[GW:.*]]: tensor<2x3xf32>, %[[GB:.*]]: tensor<2xf32>, %[[GF:.*]]: tensor<2xf32>, %[[LR:.*]]: f32)
// CHECK-NEXT:    %[[W1:.*]] = train.scale_grad @w, %[[GW]] {exponent = 1 : i64}
// CHECK-NEXT:    %[[W2:.*]] = train.scale_grad @w, %[[W1]] {exponent = -2 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:    train.sgd @w, %[[W2]], %[[LR]] {rounding = "nearest"} : tensor<2x3xf32>
// CHECK-NEXT:    %[[B1:.*]] = train.scale_grad @b, %[[GB]] {exponent = 1 : i64}
// CHECK-NEXT:    %[[B2:.*]] = train.scale_grad @b, %[[B1]] {exponent = -2 : i64} : (tensor<2xf32>) -> tensor<2xf32>
// CHECK-NEXT:    train.sgd @b, %[[B2]], %[[LR]] {rounding = "nearest"} : tensor<2xf32>
// CHECK-NEXT:    train.sgd @f, %[[GF]], %[[LR]] : tensor<2xf32>
// CHECK-NEXT:    func.return

// -----

// The int8 pipeline: autodiff makes the classifier's int8 weight and int32 bias trainable
// params, saves the clamp's mask in the forward, and updates in the integer domain; qas
// adds the s^-2 scaling.
func.func @forward(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %q = quant.quantize %x : tensor<1x4xf32> -> tensor<1x4x!quant.uniform<i8:f32, 0.0078125:0>>
  %w = quant.constant dense<[[1, -2, 3, 4], [5, 6, -7, 8]]> : tensor<2x4xi8> -> tensor<2x4x!quant.uniform<i8:f32:0, {0.25:0, 0.5:0}>>
  %b = quant.constant dense<[100, -100]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32:0, {0.001953125:0, 0.00390625:0}>>
  %y = quant.fully_connected %q, %w, %b : (tensor<1x4x!quant.uniform<i8:f32, 0.0078125:0>>, tensor<2x4x!quant.uniform<i8:f32:0, {0.25:0, 0.5:0}>>, tensor<2x!quant.uniform<i32:f32:0, {0.001953125:0, 0.00390625:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.125:3>>
  %l = quant.dequantize %y : tensor<1x2x!quant.uniform<i8:f32, 0.125:3>> -> tensor<1x2xf32>
  func.return %l : tensor<1x2xf32>
}

// PIPE:       train.param @layer0.weight trainable : tensor<2x4x!quant.uniform<i8:f32:0, {0.25:0, 0.5:0}>> = dense<{{.*}}> : tensor<2x4xi8>
// PIPE-NEXT:  train.param @layer0.weight.rng : tensor<i32> = dense<-1640531527> : tensor<i32>
// PIPE-NEXT:  train.param @layer0.bias trainable : tensor<2x!quant.uniform<i32:f32:0, {0.001953125:0, 0.00390625:0}>> = dense<[100, -100]> : tensor<2xi32>
// PIPE-NEXT:  train.param @layer0.bias.rng : tensor<i32> = dense<0> : tensor<i32>
// PIPE-LABEL: func.func @train_step(
// PIPE:         %[[W:.*]] = train.load @layer0.weight
// PIPE:         %[[Y:.*]] = quant.fully_connected %[[Q:.*]], %[[W]], %[[B:.*]] :
// PIPE-NEXT:    %[[M:.*]] = train.clamp_mask %[[Y]] from %[[Q]], %[[W]], %[[B]] : ({{.*}}) -> tensor<1x2xi1>
// PIPE-NEXT:    %[[L:.*]] = quant.dequantize %[[Y]]
// PIPE-NEXT:    %{{.*}}, %[[DL:.*]] = train.softmax_cross_entropy %[[L]]
// PIPE-NEXT:    %[[DY:.*]] = train.mask_grad %[[DL]], %[[M]] : (tensor<1x2xf32>, tensor<1x2xi1>) -> tensor<1x2xf32>
// PIPE-NEXT:    %[[DW:.*]] = train.fully_connected_weight_grad %[[DY]], %[[Q]] : ({{.*}}) -> tensor<2x4xf32>
// PIPE-NEXT:    %[[DB:.*]] = train.bias_grad %[[DY]] : (tensor<1x2xf32>) -> tensor<2xf32>
// PIPE-NEXT:    %[[B1:.*]] = train.scale_grad @layer0.bias, %[[DB]] {exponent = 1 : i64}
// PIPE-NEXT:    %[[B2:.*]] = train.scale_grad @layer0.bias, %[[B1]] {exponent = -2 : i64}
// PIPE-NEXT:    train.sgd @layer0.bias, %[[B2]], %{{.*}} {rounding = "stochastic", rng = @layer0.bias.rng} : tensor<2xf32>
// PIPE-NEXT:    %[[W1:.*]] = train.scale_grad @layer0.weight, %[[DW]] {exponent = 1 : i64}
// PIPE-NEXT:    %[[W2:.*]] = train.scale_grad @layer0.weight, %[[W1]] {exponent = -2 : i64}
// PIPE-NEXT:    train.sgd @layer0.weight, %[[W2]], %{{.*}} {rounding = "stochastic", rng = @layer0.weight.rng} : tensor<2x4xf32>
// PIPE-NEXT:    func.return
